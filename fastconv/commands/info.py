"""fastconv info: version, ISA, threads, CUDA."""


def register(sub):
    p = sub.add_parser("info", help="version, CPU instruction set, OpenMP threads, CUDA build and devices")
    p.set_defaults(func=run)


def run(args) -> int:
    import fastconv

    for key, value in fastconv.info().items():
        print(f"{key:16s} {value}")
    return 0
