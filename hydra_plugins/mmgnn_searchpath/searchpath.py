"""Appends the folders in ``$MMGNN_CONFIG_PATH`` (``os.pathsep``-separated) to Hydra's
config search path, after ``conf/``: ``python run.py gnn=mygnn`` then finds
``<folder>/gnn/mygnn.yaml``, and so do the compose API and the sweepers' ``glob(*)``.

Hydra discovers this class because it lives in the ``hydra_plugins`` namespace package
(``run.py`` and the tests put the project root on ``sys.path``).
"""
from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin


class MMGNNConfigPathPlugin(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        from mmgnn.config import config_search_path

        for path in config_search_path()[1:]:
            search_path.append(provider="mmgnn-config-path", path=path)
