"""The review dashboard (issue 19): server-rendered pages for people, on the
API process. One resource class per page; routes.py mounts them."""
