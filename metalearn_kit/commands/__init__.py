"""The ``metalearn-kit`` sub-commands, one module each (``configure_parser(parser)`` and ``main(args)``):
``info``, ``train``, ``pretrain``, ``db``, ``notebooks`` (execute), ``bench_notebooks``, ``bench_restoration``,
``bench_generation``. :mod:`metalearn_kit.cli` lists them and is the console entry point."""

__all__: list[str] = []
