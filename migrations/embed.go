// Package migrations holds the numbered SQL migrations, embedded in the binary.
package migrations

import "embed"

// FS holds every migration file (NNN_name.sql), applied in order by internal/dbmigrate.
//
//go:embed *.sql
var FS embed.FS
