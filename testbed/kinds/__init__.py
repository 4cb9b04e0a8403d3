"""Machine kinds beside the nodes: the router and the external hosts. Each is started by the Nodes action like
a node (same image, same agent, its own role label, so `down` finds it) and set up by its own action here."""
