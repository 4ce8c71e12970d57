package server

import "syscall"

// errTooManyFiles is accept's error when the process is out of file descriptors: transient, so the
// listener backs off instead of failing.
var errTooManyFiles = syscall.EMFILE
