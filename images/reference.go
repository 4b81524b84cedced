package images

import (
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/flyingdutchman/flyingdutchman/errdefs"
)

// dockerHub is how references to Docker Hub are written in canonical form. The library
// (go-containerregistry) calls the registry index.docker.io; people and Docker call it
// docker.io.
const dockerHub = "docker.io"

// Reference is a parsed image reference: a repository with a tag or a digest.
type Reference struct {
	named name.Reference
}

// ParseReference parses s as Docker does: a missing registry means Docker Hub, a missing
// tag means "latest", and a Docker Hub repository without a slash lives under "library/".
func ParseReference(s string) (Reference, error) {
	if strings.TrimSpace(s) != s || s == "" {
		return Reference{}, errdefs.Invalid(fmt.Errorf("invalid reference %q: empty or surrounded by spaces", s))
	}
	r, err := name.ParseReference(s)
	if err != nil {
		detail := strings.TrimPrefix(err.Error(), "could not parse reference: ")
		if detail == s {
			detail = "want NAME[:TAG] or NAME@sha256:DIGEST, with a lowercase repository name"
		}
		return Reference{}, errdefs.Invalid(fmt.Errorf("invalid reference %q: %s", s, detail))
	}
	return Reference{named: r}, nil
}

// ParseTag parses s as ParseReference does but refuses a digest: s must name a tag.
func ParseTag(s string) (Reference, error) {
	r, err := ParseReference(s)
	if err != nil {
		return r, err
	}
	if r.Tag() == "" {
		return Reference{}, errdefs.Invalid(fmt.Errorf("invalid tag %q: a digest reference cannot be a tag", s))
	}
	return r, nil
}

// Registry is the registry host, "docker.io" for Docker Hub.
func (r Reference) Registry() string {
	reg := r.named.Context().RegistryStr()
	if reg == name.DefaultRegistry {
		return dockerHub
	}
	return reg
}

// Repository is the canonical repository, such as docker.io/library/alpine.
func (r Reference) Repository() string {
	return r.Registry() + "/" + r.named.Context().RepositoryStr()
}

// Tag is the tag, or "" for a digest reference.
func (r Reference) Tag() string {
	if t, ok := r.named.(name.Tag); ok {
		return t.TagStr()
	}
	return ""
}

// Digest is the digest, or "" for a tag reference.
func (r Reference) Digest() string {
	if d, ok := r.named.(name.Digest); ok {
		return d.DigestStr()
	}
	return ""
}

// String is the canonical form: docker.io/library/alpine:3.20, 127.0.0.1:5000/app@sha256:...
func (r Reference) String() string {
	if t := r.Tag(); t != "" {
		return r.Repository() + ":" + t
	}
	return r.Repository() + "@" + r.Digest()
}

// Familiar is the short form people type: alpine:3.20 for docker.io/library/alpine:3.20.
func (r Reference) Familiar() string {
	return FamiliarName(r.String())
}

// FamiliarName shortens a canonical reference or repository as Docker displays it.
func FamiliarName(canonical string) string {
	s := strings.TrimPrefix(canonical, dockerHub+"/")
	if s == canonical {
		return s
	}
	return strings.TrimPrefix(s, "library/")
}

// WithDigest returns the reference of digest d in r's repository.
func (r Reference) WithDigest(d string) Reference {
	return Reference{named: r.named.Context().Digest(d)}
}

// withInsecure re-parses r so that go-containerregistry may fall back to plain HTTP.
func (r Reference) withInsecure() Reference {
	n, err := name.ParseReference(r.named.String(), name.Insecure)
	if err != nil {
		return r
	}
	return Reference{named: n}
}
