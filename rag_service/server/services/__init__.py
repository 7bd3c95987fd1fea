"""One service per feature; routers only translate HTTP to these calls and back."""
