"""gencsp build MODEL | build-base | sif MODEL"""

from __future__ import annotations

from pathlib import Path


def register(sub) -> None:
    build = sub.add_parser("build", help="docker build a model image (containers/MODEL/Dockerfile)")
    build.add_argument("model")
    build.add_argument("--base", help="BASE_IMAGE build argument (default: the Dockerfile's, or gencsp/base)")
    build.add_argument("--build-arg", action="append", default=[], metavar="KEY=VALUE")
    build.add_argument("--no-cache", action="store_true")
    build.add_argument("--variant", help="which build of the image (see `gencsp models list`; default: cuda where "
                                         "an NVIDIA driver is present, else cpu)")
    build.add_argument("--upstream", metavar="DIR", help="mirror of upstream archives, laid out as GitHub's "
                                                          "OWNER/REPO/archive/COMMIT.tar.gz (default: "
                                                          "$GENCSP_UPSTREAM_MIRROR, else GitHub)")
    build.set_defaults(func=cmd_build)

    base = sub.add_parser("build-base", help="make the Debian base image locally (debootstrap; needs root)")
    base.add_argument("--suite", default="bookworm")
    base.add_argument("--mirror", default="http://deb.debian.org/debian")
    base.set_defaults(func=cmd_build_base)

    sif = sub.add_parser("sif", help="export a model image and build an Apptainer SIF from it")
    sif.add_argument("model")
    sif.add_argument("--out", type=Path, help="folder for the archive and the SIF (default: $GENCSP_HOME/images)")
    sif.add_argument("--for", dest="cluster", help="also print the steps to install it on a cluster (e.g. jean-zay)")
    sif.set_defaults(func=cmd_sif)


def cmd_build(args) -> int:
    from .. import images
    from ..console import out

    build_args = dict(pair.split("=", 1) for pair in args.build_arg)
    with out.status(f"building {args.model}") as status:
        entry = images.build(args.model, base=args.base, build_args=build_args, nocache=args.no_cache,
                             variant=args.variant, upstream_mirror=args.upstream,
                             on_line=lambda line: status.update(f"building {args.model}: {line[:100]}"))
    out.print(f"built {entry['image']} {entry['id']} (base {entry['base']})", highlight=False)
    labels = entry["labels"]
    if labels.get("gencsp.upstream.commit"):
        out.print(f"upstream {labels['gencsp.upstream.repo']} @ {labels['gencsp.upstream.commit']} "
                  f"(archive sha256 {labels.get('gencsp.upstream.sha256')}, from {labels.get('gencsp.upstream.source')})",
                  highlight=False)
    if entry.get("wheels_compiled"):
        out.print(f"compiled wheels kept for the next build: {', '.join(entry['wheels_compiled'])}", highlight=False)
    return 0


def cmd_build_base(args) -> int:
    from .. import images
    from ..console import out

    with out.status(f"debootstrap {args.suite} + docker import"):
        image_id = images.build_base(args.suite, args.mirror)
    out.print(f"base image {images.local_base(args.suite)} = debian:{args.suite}-slim: {image_id}", highlight=False)
    return 0


def cmd_sif(args) -> int:
    from .. import images
    from ..console import out

    with out.status(f"exporting {args.model}"):
        entry = images.export_sif(args.model, args.out)
    out.print(f"archive {entry['archive']} (sha256 {entry['archive_sha256']})", highlight=False)
    if entry["sif_built"]:
        out.print(f"SIF {entry['sif']} sha256 {entry['sif_sha256']}", highlight=False)
    else:
        out.print("no apptainer or singularity binary here: copy the archive to a machine that has one and run\n"
                  f"  {entry['sif_command']}", highlight=False)
    if args.cluster:
        out.print(cluster_steps(args.cluster, Path(entry["sif"])), highlight=False)
    return 0


def cluster_steps(cluster: str, sif: Path) -> str:
    """Installation steps for a cluster, from the cluster profiles when available."""
    try:
        from ..clusters import sif_instructions
    except ImportError:
        return f"(no cluster profiles available to describe {cluster})"
    return sif_instructions(cluster, sif)
