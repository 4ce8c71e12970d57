package vault

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// kvSecret is one secret of a kv version 2 engine, with its versions (versions[0] is version 1).
type kvSecret struct {
	versions []kvVersion
}

type kvVersion struct {
	data      map[string]any
	created   time.Time
	deleted   time.Time // zero: not deleted
	destroyed bool
}

func (v kvVersion) metadata(n int) map[string]any {
	del := ""
	if !v.deleted.IsZero() {
		del = v.deleted.UTC().Format(time.RFC3339Nano)
	}
	return map[string]any{"created_time": v.created.UTC().Format(time.RFC3339Nano), "custom_metadata": nil,
		"deletion_time": del, "destroyed": v.destroyed, "version": n}
}

// kvV2 serves a kv version 2 engine mounted at mnt: data/<path> (read, optionally ?version=N; write
// with options.cas; delete the latest version) and metadata/<path> (read, list, delete all versions).
func (s *Server) kvV2(r *http.Request, mnt, rest string, body map[string]any) (any, error) {
	kind, p, _ := strings.Cut(rest, "/")
	key := mnt + "/" + p
	s.mu.Lock()
	defer s.mu.Unlock()
	sec := s.kv[key]
	switch {
	case kind == "data" && p != "" && r.Method == http.MethodGet:
		n := 0
		if sec != nil {
			n = len(sec.versions)
		}
		if q := r.URL.Query().Get("version"); q != "" && q != "0" {
			v, err := strconv.Atoi(q)
			if err != nil || v < 0 {
				return nil, errf(http.StatusBadRequest, "invalid version %q", q)
			}
			n = min(v, n)
		}
		if n == 0 {
			return nil, &apiError{status: http.StatusNotFound}
		}
		v := sec.versions[n-1]
		if !v.deleted.IsZero() || v.destroyed {
			// Vault answers 404 with the version's metadata and no data.
			return nil, &apiError{status: http.StatusNotFound}
		}
		return map[string]any{"data": map[string]any{"data": v.data, "metadata": v.metadata(n)}}, nil
	case kind == "data" && p != "" && (r.Method == http.MethodPost || r.Method == http.MethodPut):
		data, ok := body["data"].(map[string]any)
		if !ok {
			return nil, errf(http.StatusBadRequest, "no data provided")
		}
		if opts, _ := body["options"].(map[string]any); opts != nil {
			if cas, ok := opts["cas"].(float64); ok {
				cur := 0
				if sec != nil {
					cur = len(sec.versions)
				}
				if int(cas) != cur {
					return nil, errf(http.StatusBadRequest, "check-and-set parameter did not match the current version")
				}
			}
		}
		if sec == nil {
			sec = &kvSecret{}
			s.kv[key] = sec
		}
		sec.versions = append(sec.versions, kvVersion{data: data, created: s.now()})
		n := len(sec.versions)
		return map[string]any{"data": sec.versions[n-1].metadata(n)}, nil
	case kind == "data" && p != "" && r.Method == http.MethodDelete:
		if sec != nil {
			sec.versions[len(sec.versions)-1].deleted = s.now()
		}
		return nil, nil
	case kind == "metadata" && r.Method == "LIST":
		return s.kvList(mnt, p)
	case kind == "metadata" && p != "" && r.Method == http.MethodGet:
		if sec == nil {
			return nil, &apiError{status: http.StatusNotFound}
		}
		versions := map[string]any{}
		for i, v := range sec.versions {
			versions[strconv.Itoa(i+1)] = v.metadata(i + 1)
		}
		return map[string]any{"data": map[string]any{"current_version": len(sec.versions), "oldest_version": 1,
			"max_versions": 0, "cas_required": false, "versions": versions,
			"created_time": sec.versions[0].created.UTC().Format(time.RFC3339Nano),
			"updated_time": sec.versions[len(sec.versions)-1].created.UTC().Format(time.RFC3339Nano)}}, nil
	case kind == "metadata" && p != "" && r.Method == http.MethodDelete:
		delete(s.kv, key)
		return nil, nil
	}
	return nil, errf(http.StatusMethodNotAllowed, "unsupported operation on %s/%s", mnt, rest)
}

// kvList lists the keys below dir of a kv engine, folders with a trailing "/". s.mu is held.
func (s *Server) kvList(mnt, dir string) (any, error) {
	prefix := mnt + "/" + dir
	if dir != "" && !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	var keys []string
	for k := range s.kv {
		rest, ok := strings.CutPrefix(k, prefix)
		if !ok {
			continue
		}
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			rest = rest[:i+1]
		}
		if !slices.Contains(keys, rest) {
			keys = append(keys, rest)
		}
	}
	if len(keys) == 0 {
		return nil, &apiError{status: http.StatusNotFound}
	}
	slices.Sort(keys)
	return map[string]any{"data": map[string]any{"keys": keys}}, nil
}
