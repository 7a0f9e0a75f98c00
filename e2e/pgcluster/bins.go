package pgcluster

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// serverPrograms are the programs a bin directory must contain for Start to
// work with it.
var serverPrograms = []string{"initdb", "pg_ctl", "postgres"}

// debianBinGlob is where Debian/Ubuntu install versioned server binaries.
const debianBinGlob = "/usr/lib/postgresql/*/bin"

// FindBinDir returns a directory holding the PostgreSQL server programs
// (initdb, pg_ctl, postgres). It tries, in order:
//
//  1. $PG_BIN (when set it must be valid; there is no fallback),
//  2. the output of `pg_config --bindir`,
//  3. the highest-numbered /usr/lib/postgresql/*/bin.
//
// The error lists every candidate tried and how to install the binaries.
func FindBinDir() (string, error) {
	if env := os.Getenv("PG_BIN"); env != "" {
		if missing := missingPrograms(env); len(missing) > 0 {
			return "", fmt.Errorf("pgcluster: PG_BIN=%s lacks %s", env, strings.Join(missing, ", "))
		}
		return env, nil
	}

	var tried []string
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		dir := strings.TrimSpace(string(out))
		if dir != "" {
			if missing := missingPrograms(dir); len(missing) == 0 {
				return dir, nil
			} else {
				tried = append(tried, fmt.Sprintf("pg_config --bindir=%s (lacks %s)", dir, strings.Join(missing, ", ")))
			}
		}
	} else {
		tried = append(tried, fmt.Sprintf("pg_config --bindir (%v)", err))
	}

	dirs, _ := filepath.Glob(debianBinGlob)
	sortByVersionDesc(dirs)
	for _, dir := range dirs {
		if missing := missingPrograms(dir); len(missing) == 0 {
			return dir, nil
		} else {
			tried = append(tried, fmt.Sprintf("%s (lacks %s)", dir, strings.Join(missing, ", ")))
		}
	}
	if len(dirs) == 0 {
		tried = append(tried, debianBinGlob+" (no match)")
	}

	return "", errors.New("pgcluster: PostgreSQL server binaries (initdb, pg_ctl, postgres) not found; tried: " +
		strings.Join(tried, "; ") +
		". Install them with scripts/install-deps.sh (make deps) or set PG_BIN to their directory")
}

// missingPrograms returns the server programs that dir lacks.
func missingPrograms(dir string) []string {
	var missing []string
	for _, p := range serverPrograms {
		if !isExecutable(filepath.Join(dir, p)) {
			missing = append(missing, p)
		}
	}
	return missing
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// sortByVersionDesc orders /usr/lib/postgresql/<N>/bin paths by N, highest
// first. Components that are not numbers sort last, by name.
func sortByVersionDesc(dirs []string) {
	version := func(dir string) float64 {
		v, err := strconv.ParseFloat(filepath.Base(filepath.Dir(dir)), 64)
		if err != nil {
			return -1
		}
		return v
	}
	sort.SliceStable(dirs, func(i, j int) bool {
		vi, vj := version(dirs[i]), version(dirs[j])
		if vi != vj {
			return vi > vj
		}
		return dirs[i] < dirs[j]
	})
}

// clientProgram returns the path of a client program (psql, pgbench):
// binDir/name when it exists there, else the one on PATH, else binDir/name
// (so the caller's exec error names the expected location).
func clientProgram(binDir, name string) string {
	p := filepath.Join(binDir, name)
	if isExecutable(p) {
		return p
	}
	if lp, err := exec.LookPath(name); err == nil {
		return lp
	}
	return p
}

// bundledLibs are the libraries whose presence in binDir/../lib marks a
// self-contained PostgreSQL tree: distribution packages keep libpq and ICU
// in the system library directories, and their ../lib only holds server
// modules.
var bundledLibs = []string{"libpq.so*", "libicuuc.so*"}

// bundledLibDir returns binDir/../lib when it holds the tree's own shared
// libraries, else "".
func bundledLibDir(binDir string) string {
	lib := filepath.Join(filepath.Dir(binDir), "lib")
	for _, pattern := range bundledLibs {
		if m, _ := filepath.Glob(filepath.Join(lib, pattern)); len(m) > 0 {
			return lib
		}
	}
	return ""
}

// withoutVar returns env without the entries for the variable key.
func withoutVar(env []string, key string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if k, _, _ := strings.Cut(kv, "="); k != key {
			out = append(out, kv)
		}
	}
	return out
}
