from channel.cli import main

main()
