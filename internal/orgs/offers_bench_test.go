package orgs

import "testing"

// BenchmarkSiteOffers is the catalogue check of every redemption: the label as sent (the
// catalogue's own spelling, the usual case) and one typed differently.
func BenchmarkSiteOffers(b *testing.B) {
	si := SiteInfo{Services: NationalServices}
	last := NationalServices[len(NationalServices)-1]
	for _, c := range []struct{ name, label string }{
		{"verbatim", last},
		{"respelled", "  " + last + " "},
	} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				if _, ok := si.Offers(c.label); !ok {
					b.Fatal("not offered")
				}
			}
		})
	}
}
