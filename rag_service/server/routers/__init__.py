"""Thin HTTP routers: parse, call one service, shape the answer."""
