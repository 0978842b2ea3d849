package router

import "hash/fnv"

// fnv64a is FNV-1a-64 from the standard library, the reference for
// GatewayMAC's inline hash.
func fnv64a(s string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(s))
	return h.Sum64()
}
