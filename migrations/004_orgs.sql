-- Re-importing the national site data updates a registered site's name and département
-- (internal/orgs ImportSites). Only these two columns: kind, SIRET and creation time of an
-- organisation never change.
GRANT UPDATE (name, departement) ON organisations TO passnum_app;
