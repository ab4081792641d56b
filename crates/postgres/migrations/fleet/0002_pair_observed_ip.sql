-- The address a pairing request came from, as the server saw it, shown
-- beside the address the robot claims (`ip_address`) before a user
-- confirms: a code typed for the wrong robot shows a stranger's address.
ALTER TABLE fleet_robots ADD COLUMN pair_observed_ip TEXT;
