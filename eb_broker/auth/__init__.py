"""Authenticators, chosen by configuration (``EBBroker.authenticators``)."""

from .aggregator import AggregatorAuthenticator, identity_headers
from .base import Authenticator, AuthError, Identity, bearer_token
from .basic import BasicAuthenticator, hash_password
from .jupyterhub import JupyterHubAuthenticator
from .jwt_oidc import JWTAuthenticator
from .token_file import TokenFileAuthenticator

#: Names accepted by ``EBBroker.authenticators``.
AUTHENTICATORS: dict[str, type[Authenticator]] = {
    "token-file": TokenFileAuthenticator,
    "basic": BasicAuthenticator,
    "jupyterhub": JupyterHubAuthenticator,
    "jwt": JWTAuthenticator,
    "aggregator": AggregatorAuthenticator,
}

__all__ = [
    "AUTHENTICATORS",
    "AggregatorAuthenticator",
    "AuthError",
    "Authenticator",
    "BasicAuthenticator",
    "Identity",
    "JWTAuthenticator",
    "JupyterHubAuthenticator",
    "TokenFileAuthenticator",
    "bearer_token",
    "hash_password",
    "identity_headers",
]
