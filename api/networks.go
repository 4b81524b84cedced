package api

import (
	"net/http"

	"github.com/flyingdutchman/flyingdutchman/engine"
	"github.com/flyingdutchman/flyingdutchman/engine/network"
)

// NetworkCreateRequest is the body of POST /v1/networks.
type NetworkCreateRequest struct {
	Name    string            `json:"name"`
	Subnet  string            `json:"subnet,omitempty"`
	Gateway string            `json:"gateway,omitempty"`
	Labels  map[string]string `json:"labels,omitempty"`
}

// NetworkPruneResult is what POST /v1/networks/prune removed.
type NetworkPruneResult struct {
	Removed []string `json:"removed"`
}

func (s *Server) networkCreate(w http.ResponseWriter, r *http.Request) error {
	var req NetworkCreateRequest
	if err := readJSON(r, &req); err != nil {
		return err
	}
	n, err := s.eng.CreateNetwork(req.Name, network.CreateOptions{Subnet: req.Subnet, Gateway: req.Gateway, Labels: req.Labels})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, n)
}

func (s *Server) networkList(w http.ResponseWriter, r *http.Request) error {
	ns, err := s.eng.NetworkList()
	if err != nil {
		return err
	}
	if ns == nil {
		ns = []*engine.NetworkInfo{}
	}
	return writeJSON(w, http.StatusOK, ns)
}

func (s *Server) networkInspect(w http.ResponseWriter, r *http.Request) error {
	n, err := s.eng.Network(r.PathValue("name"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, n)
}

func (s *Server) networkRemove(w http.ResponseWriter, r *http.Request) error {
	if err := s.eng.RemoveNetwork(r.PathValue("name")); err != nil {
		return err
	}
	return noContent(w)
}

func (s *Server) networkPrune(w http.ResponseWriter, r *http.Request) error {
	removed, err := s.eng.PruneNetworks()
	if err != nil {
		return err
	}
	if removed == nil {
		removed = []string{}
	}
	return writeJSON(w, http.StatusOK, NetworkPruneResult{Removed: removed})
}

// NetworkConnectRequest is the body of POST /v1/networks/{name}/connect and disconnect.
type NetworkConnectRequest struct {
	Container string   `json:"container"`
	IP        string   `json:"ip,omitempty"`
	Aliases   []string `json:"aliases,omitempty"`
}

func (s *Server) networkConnect(w http.ResponseWriter, r *http.Request) error {
	var req NetworkConnectRequest
	if err := readJSON(r, &req); err != nil {
		return err
	}
	if err := s.eng.ConnectNetwork(r.Context(), req.Container, network.Request{Network: r.PathValue("name"), IP: req.IP, Aliases: req.Aliases}); err != nil {
		return err
	}
	return noContent(w)
}

func (s *Server) networkDisconnect(w http.ResponseWriter, r *http.Request) error {
	var req NetworkConnectRequest
	if err := readJSON(r, &req); err != nil {
		return err
	}
	if err := s.eng.DisconnectNetwork(r.Context(), req.Container, r.PathValue("name")); err != nil {
		return err
	}
	return noContent(w)
}
