"""One Falcon resource class per noun of the API."""
