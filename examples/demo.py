"""Run the cachescope demo (what `make demo` runs): the Aura prompt on the offline simulator."""

from cachescope._demo import main

if __name__ == "__main__":
    raise SystemExit(main())
