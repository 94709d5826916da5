"""privbox clients on Flower (``pip install "privbox[flower]"``), for runs that outgrow one process.

* :mod:`.arrays`: Paddle state dicts and privbox updates <-> Flower ``ArrayRecord`` (names, BN
  buffers and dtypes kept; NumPy serialisation without pickle);
* :mod:`.mods`: the client-side filter chain as Flower client mods: the update transforms
  (GaussianPrivacy, ...) and the RDLV leakage filter, then the conversion to the full state that
  Flower's FedAvg averages;
* :mod:`.apps`: a ``ClientApp`` wrapping a :class:`privbox.fl.client.Client` and a ``ServerApp``
  with FedAvg and a central evaluation, built from the same :class:`~privbox.fl.config.FLConfig`
  as the embedded simulation; ``client_app``/``server_app`` read the config from the Flower run
  config (``privbox-config``, ``privbox-overrides``, ``privbox-out``) for SuperLink/SuperNode
  deployments.

Nothing here is imported by ``privbox.fl``; importing it needs ``flwr``.
"""
