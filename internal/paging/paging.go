// Package paging is the page request of list calls: a size and an opaque token from the
// previous page. Each list encodes its own token (a keyset position).
package paging

import "github.com/passnum/passnum/internal/fault"

// Page sizes: the default when none is asked, and the most one page holds.
const (
	DefaultSize = 50
	MaxSize     = 500
)

// Request is a page request of a list call.
type Request struct {
	Size  int32  // 0: DefaultSize; more than MaxSize: MaxSize
	Token string // opaque, from the previous page
}

// Limit is the number of rows to return.
func (r Request) Limit() (int, error) {
	switch {
	case r.Size < 0:
		return 0, fault.InvalidField("page_size", "La taille de page ne peut pas être négative.")
	case r.Size == 0:
		return DefaultSize, nil
	case r.Size > MaxSize:
		return MaxSize, nil
	}
	return int(r.Size), nil
}
