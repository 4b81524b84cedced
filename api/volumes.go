package api

import (
	"net/http"

	"github.com/flyingdutchman/flyingdutchman/engine"
	"github.com/flyingdutchman/flyingdutchman/volumes"
)

// VolumeCreateRequest is the body of POST /v1/volumes.
type VolumeCreateRequest struct {
	Name       string            `json:"name,omitempty"`
	Driver     string            `json:"driver,omitempty"`
	Labels     map[string]string `json:"labels,omitempty"`
	DriverOpts map[string]string `json:"driverOpts,omitempty"`
}

// VolumePruneResult is what POST /v1/volumes/prune removed.
type VolumePruneResult struct {
	Removed []string `json:"removed"`
}

func (s *Server) volumeCreate(w http.ResponseWriter, r *http.Request) error {
	var req VolumeCreateRequest
	if err := readJSON(r, &req); err != nil {
		return err
	}
	v, err := s.eng.CreateVolume(r.Context(), req.Name, volumes.CreateOptions{Driver: req.Driver, Labels: req.Labels, DriverOpts: req.DriverOpts})
	if err != nil {
		return err
	}
	info, err := s.eng.Volume(v.Name)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, info)
}

func (s *Server) volumeList(w http.ResponseWriter, r *http.Request) error {
	vs, err := s.eng.Volumes()
	if err != nil {
		return err
	}
	if vs == nil {
		vs = []*engine.VolumeInfo{}
	}
	return writeJSON(w, http.StatusOK, vs)
}

func (s *Server) volumeInspect(w http.ResponseWriter, r *http.Request) error {
	v, err := s.eng.Volume(r.PathValue("name"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, v)
}

func (s *Server) volumeRemove(w http.ResponseWriter, r *http.Request) error {
	if err := s.eng.RemoveVolume(r.Context(), r.PathValue("name")); err != nil {
		return err
	}
	return noContent(w)
}

func (s *Server) volumePrune(w http.ResponseWriter, r *http.Request) error {
	all, err := boolParam(r.URL.Query().Get("all"))
	if err != nil {
		return err
	}
	removed, err := s.eng.PruneVolumes(r.Context(), all)
	if err != nil {
		return err
	}
	if removed == nil {
		removed = []string{}
	}
	return writeJSON(w, http.StatusOK, VolumePruneResult{Removed: removed})
}
