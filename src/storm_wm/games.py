"""The Atari 100k benchmark's 26 games (Kaiser et al. 2020), in the order papers list them."""

ATARI_100K_GAMES: tuple[str, ...] = tuple(
    """
    Alien Amidar Assault Asterix BankHeist BattleZone Boxing Breakout ChopperCommand
    CrazyClimber DemonAttack Freeway Frostbite Gopher Hero Jamesbond Kangaroo Krull
    KungFuMaster MsPacman Pong PrivateEye Qbert RoadRunner Seaquest UpNDown
    """.split()
)
