from fingerprint.cli import main

main()
