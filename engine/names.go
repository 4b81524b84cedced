package engine

import (
	"crypto/rand"
	"encoding/hex"
	"math/big"
	"strconv"
)

// Words for the names given to containers created without one, as Docker gives
// "eager_turing": an adjective and a ship's or sailor's word, in keeping with the name.
var (
	nameAdjectives = []string{
		"agile", "bold", "brave", "calm", "clever", "crisp", "daring", "eager", "fair", "fierce",
		"gentle", "grand", "happy", "hardy", "jolly", "keen", "lively", "lucky", "merry", "nimble",
		"noble", "proud", "quick", "quiet", "rapid", "salty", "sharp", "silent", "steady", "swift",
		"tidy", "trusty", "vivid", "wise", "zesty",
	}
	nameNouns = []string{
		"anchor", "beacon", "bosun", "brig", "buoy", "captain", "clipper", "compass", "corsair", "cutter",
		"frigate", "galleon", "harbor", "helm", "hull", "keel", "ketch", "lantern", "mariner", "mast",
		"navigator", "pilot", "quay", "rudder", "schooner", "sextant", "sloop", "spar", "tide", "voyager",
		"wake", "whaler", "yawl",
	}
)

func randomIndex(n int) int {
	v, err := rand.Int(rand.Reader, big.NewInt(int64(n)))
	if err != nil {
		return 0
	}
	return int(v.Int64())
}

// randomName makes a container name; attempt > 0 adds a number, as Docker does when the
// plain name is taken.
func randomName(attempt int) string {
	n := nameAdjectives[randomIndex(len(nameAdjectives))] + "_" + nameNouns[randomIndex(len(nameNouns))]
	if attempt > 0 {
		n += strconv.Itoa(randomIndex(10))
	}
	return n
}

// newID makes a container ID: 32 random bytes in hex.
func newID() string {
	b := make([]byte, 32)
	rand.Read(b)
	return hex.EncodeToString(b)
}
