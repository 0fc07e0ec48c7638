from longchat.cli import run

run()
