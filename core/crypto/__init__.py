"""The keys only the server holds (derived per purpose from the deployment
secret) and the signed tokens made with them."""
