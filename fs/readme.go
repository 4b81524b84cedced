package fs

// Readme is the tree's README.md. The one written into the plain directory under the
// mount point (shown while the engine is down) says so first.
func Readme(running bool) string {
	head := "# FlyingDutchman\n\nThis folder is the FlyingDutchman container engine, served as files.\n"
	if !running {
		head = "# FlyingDutchman (not running)\n\n" +
			"The FlyingDutchman engine is not running, so this folder shows only this file.\n" +
			"Start it with `dutchman daemon` (as root), then look again: containers and\n" +
			"images appear here as files.\n"
	}
	return head + readmeBody
}

const readmeBody = `
Everything here is plain files: read them with cat, watch them with tail -f, and
control the engine by writing one verb per line into a ctl file:

    echo start > containers/web/ctl
    cat containers/web/state
    tail -f containers/web/logs
    echo docker.io/library/alpine:3.20 > images/pull

A write to a ctl file returns when the work is done; if it fails, the write fails
with an errno (EINVAL: bad verb or argument, EBUSY: not in this state, ENOENT: gone)
and the message is in the nearest error file and in events. Reading a ctl file
lists the verbs it takes now.

## Layout

    README.md           this help
    info                version, runtimes, data directory, counts (key: value lines)
    events              every engine event, one JSON object per line (tail -f it)
    containers/
      NAME.yaml         the spec of container NAME: one Docker Compose service
                        (image, command, environment, restart, ...). Saving it
                        creates or recreates the container; an invalid one changes
                        nothing, fails the save (EINVAL) and says why in NAME/error;
                        deleting it removes the container after 2 seconds. Other
                        files here (editors' swap and backup files) are kept as they
                        are.
      NAME/             one directory per container
        ctl             start | stop [SECONDS] | restart [SECONDS] | kill [SIGNAL] |
                        pause | unpause | rm [-f]
        state           created starting running stopping stopped restarting paused
                        removing
        status.json     the inspect view: image, pid, exit code, times, error, stale
        error           the last error, empty if none
        spec.yaml       the spec the container was made from
        config.json     the OCI runtime spec handed to runc (of a vm container: the
                        launch configuration of its VM, docs/vm.md)
        logs            stdout and stderr as they came, growing
        stdout, stderr  each stream alone
        stats           cpu, memory and pids now (JSON)
        top             the container's processes
        rootfs/         the container's own filesystem, read-write
    images/
      pull              write a reference per line to pull it; read: pulls under way
      error             the last failed write under images/
      REPOSITORY/TAG/   one per tagged image; Docker Hub's registry name is left out:
                        docker.io/library/alpine:3.20 is alpine/3.20/
        ref, digest, id, size, platform, created
        manifest.json, config.json, history
        ctl             rm [-f] | tag NEWREF | push [REF]
        layers/NN-sha256-HEX/   each layer's own files, read-only
        rootfs/         the merged filesystem a container starts from, read-only
      by-digest/sha256-HEX/   every image by its manifest digest
    volumes/
      NAME/             a named volume's data, read-write; mkdir makes a volume, rmdir
                        of an emptied one removes it (EBUSY while a container uses it)
      error             the last failed mkdir or rmdir
    networks/
      NAME/             a network; mkdir makes one, rmdir removes it (EBUSY while a
                        container names it)
        config.json     driver, subnet, gateway, bridge
        containers      its containers, "NAME ADDRESS" a line
      error             the last failed mkdir or rmdir
    compose/
      NAME/             a Compose project; mkdir makes one, rmdir removes an emptied
                        one that is down. Its files (compose.yaml, .env) are yours:
                        while it is up, each save re-applies it, recreating only the
                        services that changed.
        ctl             up | down [--volumes] | start | stop | restart | pull |
                        build [--no-cache]
        state           a line per service: NAME RUNNING/CONTAINERS HEALTH
        logs            every container's output, each line prefixed "web-1  | "
        error           why the last verb or save failed
        services/       a link per container to its directory in containers/
      NAME/             a project run from elsewhere (dutchman compose -f PATH up):
                        ctl (down, start, stop, restart), state, logs, error,
                        services/, source (a link to where it lives)
      error             the last failed mkdir
    builds/
      NAME/             a build context: put a Dockerfile and its files in it, or a
                        link named source to a project elsewhere (yours); mkdir makes
                        one, rmdir removes an emptied one
        ctl             build [--no-cache] [TAG]... (default tag NAME:latest) | push
                        (the last build's tags) | cancel; a write returns when it is done
        log             the last build's progress, as docker build --progress plain
        state           idle | building | built | failed | pushing
        error           why the last build or push failed
      error             the last failed mkdir or rmdir
    kernels/            guest kernels of the vm runtime (runtime: vm), fetched on first need
      ctl               pull SOURCE | rm NAME | default NAME (root's tree only); a SOURCE
                        is debian:PACKAGE, a kernel .deb or a registry reference
      default           the default kernel's name
      NAME/             a kernel: kernel.json (source, size), modules (those loaded)
      error             why the last verb failed

Watching: inotify sees only changes made through this folder, not those the engine
makes itself; follow events (tail -f events) to see everything that happens.

More: docs/tree.md in the FlyingDutchman repository, and dutchman --help.
`
