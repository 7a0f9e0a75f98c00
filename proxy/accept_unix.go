package proxy

import "syscall"

// errTooManyFiles is what accept returns when the process is out of file
// descriptors; Serve waits and retries on it.
var errTooManyFiles = syscall.EMFILE
