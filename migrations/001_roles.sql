-- The application works as passnum_app, a role that owns nothing. Migrations run as the
-- owner (the DATABASE_URL user). Roles are cluster-wide, so creation is idempotent.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'passnum_app') THEN
        CREATE ROLE passnum_app NOLOGIN;
    END IF;
END
$$;

-- Let the migrating user SET ROLE to passnum_app (the pool does it after connecting).
DO $$
BEGIN
    EXECUTE format('GRANT passnum_app TO %I', current_user);
END
$$;

GRANT USAGE ON SCHEMA public TO passnum_app;
