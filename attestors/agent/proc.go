package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// maxEnvironBytes bounds how much of a process's environment is read.
const maxEnvironBytes = 1 << 20

// errNoManifest means the process declares no manifest: an ordinary workload, not an error.
var errNoManifest = errors.New("no manifest declared")

// readManifest finds and reads the manifest that process pid declares through the environment variable
// envName. Paths resolve inside the process's own root and working directory (/proc/PID/root and
// /proc/PID/cwd), so a containerised agent's path means what it means to the agent.
//
// The manifest must be a regular file that neither its group nor others can write: the selectors it
// yields are only as trustworthy as whoever can change it. The last path element is opened without
// following symlinks.
func readManifest(procRoot string, pid int32, envName string, limit int) ([]byte, error) {
	procDir := filepath.Join(procRoot, strconv.Itoa(int(pid)))
	env, err := readLimited(filepath.Join(procDir, "environ"), maxEnvironBytes)
	if err != nil {
		return nil, fmt.Errorf("read environment: %w", err)
	}
	var declared string
	prefix := []byte(envName + "=")
	for kv := range bytes.SplitSeq(env, []byte{0}) {
		if bytes.HasPrefix(kv, prefix) {
			declared = string(kv[len(prefix):])
		}
	}
	if declared == "" {
		return nil, errNoManifest
	}
	if !path.IsAbs(declared) {
		// Relative to the process's working directory, as the process sees it.
		cwd, err := os.Readlink(filepath.Join(procDir, "cwd"))
		if err != nil {
			return nil, fmt.Errorf("resolve working directory: %w", err)
		}
		declared = path.Join(cwd, declared)
	}
	return readInRoot(filepath.Join(procDir, "root"), declared, limit)
}

// readInRoot opens p with root as "/" for every step of the resolution (openat2 RESOLVE_IN_ROOT): a
// symlink inside a container cannot make the attestor read a file outside the container.
func readInRoot(root, p string, limit int) ([]byte, error) {
	rootFD, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open process root: %w", err)
	}
	defer unix.Close(rootFD)
	fd, err := unix.Openat2(rootFD, p, &unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_NOFOLLOW | unix.O_NONBLOCK | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		return nil, fmt.Errorf("open manifest %s: %w", p, err)
	}
	f := os.NewFile(uintptr(fd), p)
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("manifest %s is not a regular file", p)
	}
	if st.Mode().Perm()&0o022 != 0 {
		return nil, fmt.Errorf("manifest %s is writable by group or others (mode %v)", p, st.Mode().Perm())
	}
	if st.Size() > int64(limit) {
		return nil, fmt.Errorf("manifest %s is %d bytes, over the %d-byte limit", p, st.Size(), limit)
	}
	b, err := io.ReadAll(io.LimitReader(f, int64(limit)+1))
	if err != nil {
		return nil, err
	}
	if len(b) > limit {
		return nil, fmt.Errorf("manifest %s is over the %d-byte limit", p, limit)
	}
	return b, nil
}

func readLimited(p string, limit int64) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is over %d bytes", p, limit)
	}
	return b, nil
}
