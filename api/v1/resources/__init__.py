"""One Falcon resource class per ``/v1`` noun."""
