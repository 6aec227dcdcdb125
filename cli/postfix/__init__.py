"""`e2a postfix install|check|uninstall`: wiring e2a into an existing Postfix
with postconf, planned before anything changes and recorded for uninstall."""
