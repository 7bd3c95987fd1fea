"""Use cases that change a workspace as a whole: removing documents and KBs, glossary edits, export and import."""
