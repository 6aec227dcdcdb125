"""Mail an agent sends: drafts, compose, the ONE hold decision, holding, approval,
release and the owner's notification, and which row the content filter passes on."""
