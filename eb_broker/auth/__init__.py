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


def authenticator_name(authenticator: Authenticator) -> str:
    """The configuration name of ``authenticator`` (its class name when not built in)."""
    for name, cls in AUTHENTICATORS.items():
        if type(authenticator) is cls:
            return name
    return type(authenticator).__name__


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
    "authenticator_name",
    "bearer_token",
    "hash_password",
    "identity_headers",
]
