"""The `avatar` command's entry points (serve, render, train, bench, info, eval, worker): the
composition root, the one package that may import every other, web/ included."""
