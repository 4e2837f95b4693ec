// Command cmd writes development certificates for otpd's tls block and
// otpctl (make certs):
//
//	go run ./internal/devcerts/cmd [-dir bin/certs] [-client-name otpctl] [-force]
//
// It keeps the files of an earlier run unless -force, and prints the tls
// block and otpctl flags that use them.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/otpd/otpd/internal/devcerts"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("devcerts", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "bin/certs", "directory to write the certificates and keys into")
	client := fs.String("client-name", "otpctl", "common name of the client certificate (otpd's caller name)")
	force := fs.Bool("force", false, "replace certificates already in -dir")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 0 {
		fmt.Fprintf(stderr, "devcerts: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	files, err := devcerts.Paths(*dir)
	if err != nil {
		fmt.Fprintf(stderr, "devcerts: %v\n", err)
		return 1
	}
	if files.Exist() && !*force {
		fmt.Fprintf(stdout, "certificates already in %s (kept; -force or make certs FORCE=1 replaces them)\n\n", files.Dir)
	} else {
		if files, err = devcerts.Write(*dir, devcerts.Options{ClientName: *client}); err != nil {
			fmt.Fprintf(stderr, "devcerts: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "wrote a dev CA, a server certificate (localhost, 127.0.0.1, ::1) and a client certificate (CN %s) into %s\n\n", *client, files.Dir)
	}
	fmt.Fprint(stdout, files.Instructions())
	return 0
}
