"""Deployment tooling: build the image and run the compose stack in real containers.

Not part of the service (the image does not carry it): ``./dev containers`` runs
:mod:`deploy.containers`, which on a machine with no Docker engine and no reachable container
registry installs podman, makes the base images the ``Dockerfile`` names from Debian's packages,
builds a stand-in for ``apache/kafka`` from the jars ``scrapeledger.broker`` resolves, builds the
project's image from the unchanged ``Dockerfile`` and runs ``compose.yml`` with podman-compose.
"""
