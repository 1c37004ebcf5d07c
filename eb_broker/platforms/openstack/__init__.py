"""The OpenStack platform: brokered virtual machines as Nova servers (see
docs/platforms/openstack.md)."""

from .platform import OpenStackPlatform

__all__ = ["OpenStackPlatform"]
