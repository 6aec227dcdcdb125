"""The domain: configuration, database, SQL store and the pure logic shared by
every service. Nothing in here imports a service package."""
