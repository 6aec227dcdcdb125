-- Agent trash (the /v1 API's DELETE without permanent=true, and restore): a
-- trashed agent receives no mail (the policy service and the milter do not
-- see it), leaves the agent lists and every API route but its own GET,
-- DELETE and restore. Its address stays taken until it is erased. NULL: live.
ALTER TABLE agents ADD COLUMN IF NOT EXISTS deleted_at timestamptz;
