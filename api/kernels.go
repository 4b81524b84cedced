package api

import (
	"net/http"

	"github.com/flyingdutchman/flyingdutchman/engine/runtime/vm"
)

// KernelPullRequest is the body of POST /v1/kernels/pull.
type KernelPullRequest struct {
	// Source is "debian:PACKAGE", the path of a kernel .deb on the daemon's machine, or
	// the reference of a kernel artifact.
	Source string `json:"source"`
}

// KernelPushRequest is the body of POST /v1/kernels/push.
type KernelPushRequest struct {
	// Source is the Debian kernel package the artifact is made from ("debian:PACKAGE"
	// or a .deb file); Ref is where it goes.
	Source string `json:"source"`
	Ref    string `json:"ref"`
}

// KernelPushResult is the pushed artifact's digest.
type KernelPushResult struct {
	Digest string `json:"digest"`
}

func (s *Server) kernelList(w http.ResponseWriter, r *http.Request) error {
	ks, err := s.eng.Kernels()
	if err != nil {
		return err
	}
	list, err := ks.List()
	if err != nil {
		return err
	}
	if list == nil {
		list = []vm.Kernel{}
	}
	return writeJSON(w, http.StatusOK, list)
}

func (s *Server) kernelPull(w http.ResponseWriter, r *http.Request) error {
	var req KernelPullRequest
	if err := readJSON(r, &req); err != nil {
		return err
	}
	ks, err := s.eng.Kernels()
	if err != nil {
		return err
	}
	k, err := ks.Pull(r.Context(), req.Source)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, k)
}

func (s *Server) kernelRemove(w http.ResponseWriter, r *http.Request) error {
	ks, err := s.eng.Kernels()
	if err != nil {
		return err
	}
	if err := ks.Remove(r.PathValue("name")); err != nil {
		return err
	}
	return noContent(w)
}

func (s *Server) kernelDefault(w http.ResponseWriter, r *http.Request) error {
	ks, err := s.eng.Kernels()
	if err != nil {
		return err
	}
	if err := ks.SetDefault(r.PathValue("name")); err != nil {
		return err
	}
	return noContent(w)
}

func (s *Server) kernelPush(w http.ResponseWriter, r *http.Request) error {
	var req KernelPushRequest
	if err := readJSON(r, &req); err != nil {
		return err
	}
	d, err := s.eng.PushKernel(r.Context(), req.Source, req.Ref)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, KernelPushResult{Digest: d})
}
