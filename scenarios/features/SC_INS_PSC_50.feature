# language: fr
@exigence=SC.INS/PSC.50 @exigence=SC.PSC.08
Fonctionnalité: SC.INS/PSC.50 — Appeler le téléservice INSi par l'API Pro Santé Connectée
  Le LGC échange le jeton de la session Pro Santé Connect du médecin contre un jeton d'API (échange de jeton,
  RFC 8693) et le présente à l'INSi (Authorization: Bearer), avec l'assertion du professionnel et le contexte LPS
  que l'API Pro Santé Connectée exige toujours. Le jeton d'API sert tant qu'il est valide ; refusé par le service,
  il est remplacé par un nouvel échange de jeton, sans nouvelle connexion du médecin (SC.PSC.08).

  Contexte:
    Étant donné le médecin "899700366240" connecté avec Pro Santé Connect
    Et le LGC appelle l'INSi, le DMP et l'Ordonnance numérique par l'API Pro Santé Connectée

  Scénario: Recherche INSi avec le jeton d'API, puis un jeton refusé remplacé sans reconnexion
    Quand le médecin ouvre le dossier de "DE VINCI"
    Alors l'identité du patient est récupérée
    Et Pro Santé Connect a échangé le jeton de la session du médecin contre un jeton d'API, une seule fois
    Et chaque requête INSi porte le jeton d'API, l'assertion du médecin et le contexte LPS, et l'INSi y a répondu
    Quand l'INSi refuse une fois le jeton d'API (HTTP 401)
    Et le médecin interroge à nouveau l'INSi pour ce patient
    Alors le LGC a obtenu un nouveau jeton d'API, sans nouvelle connexion du médecin, et l'INSi a répondu
