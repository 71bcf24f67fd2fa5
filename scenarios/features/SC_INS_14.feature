# language: fr
@exigence=SC.INS.14 @exigence=SC.INS.15
Fonctionnalité: SC.INS.14, SC.INS.15 — Interroger l'INSi à partir de la carte Vitale
  La carte Vitale est la méthode à privilégier pour interroger le téléservice INSi : elle retrouve la personne même
  quand ses traits ont été mal saisis. Le LGC choisit sur la carte le bénéficiaire du dossier (le rang de naissance
  départage les jumeaux) et interroge l'INSi avec le NIR de l'ouvrant droit, la date et le rang de naissance et la
  couverture de la carte. Le LGC montre côte à côte les traits du dossier et ceux de l'INSi ; l'identité
  enregistrée est récupérée, pas qualifiée, et n'est donc pas envoyée au DMP.
  Le banc n'a pas de lecteur de carte : le LGC de référence lit l'image d'une carte de test fournie par le banc ;
  l'opérateur d'un LGC d'éditeur insère une vraie carte de test.

  Contexte:
    Étant donné le médecin "899700366240" connecté avec Pro Santé Connect

  Scénario: Des traits mal saisis ne trouvent pas l'identité, la carte Vitale de la mère la retrouve
    Quand le médecin ouvre le dossier de "FAMILE"
    Alors l'INSi n'a trouvé aucune identité avec les traits du dossier
    Quand le médecin lit la carte Vitale de test "famille-lina" de la patiente
    Alors l'INSi a été interrogé par la carte Vitale : NIR de l'ouvrant droit, date et rang de naissance 2 de la patiente, couverture renseignée
    Et l'identité renvoyée par INSi est affichée avec le matricule "217036322090792"
    Quand le médecin enregistre l'identité renvoyée par l'INSi
    Alors l'identité du patient est récupérée
    Et aucune requête n'est partie au DMP pour l'INS "217036322090792" tant que l'identité n'est pas qualifiée
