-- Suspension (issue 36): an operator's suspended license keeps its data
-- and refuses its tokens, devices and users until it is resumed.
ALTER TABLE licenses ADD COLUMN suspended_at TIMESTAMPTZ;
