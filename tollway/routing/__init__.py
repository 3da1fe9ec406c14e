"""Routing: model names to model groups to ordered candidate deployments."""

from tollway.routing.table import ModelGroup, RoutingTable, build_routing_table

__all__ = ["ModelGroup", "RoutingTable", "build_routing_table"]
