package server

import (
	"os"
	"testing"

	"github.com/passnum/passnum/internal/testdb"
)

// TestMain gives the package's tests a PostgreSQL server (see internal/testdb); tests that
// need no database do not touch it.
func TestMain(m *testing.M) { os.Exit(testdb.Main(m)) }
