"""Small command-line tools of mmf-pe (each has a `main(argv)`)."""
