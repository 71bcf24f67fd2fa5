# language: fr
@exigence=SC.DMP/UX.14
Fonctionnalité: SC.DMP/UX.14, SC.DMP/CONF.16 — Savoir sans clic si le DMP est consultable ; autorisation renouvelée
  À l'ouverture du dossier, le LGC interroge le DMP (TD0.2) et dit sans clic si le DMP est consultable ; sinon la
  liste DICA donne la cause (DMP fermé, médecin bloqué par le patient…). L'autorisation d'accès du professionnel,
  posée au recueil du consentement, dure six mois : expirée, elle est renouvelée (TD0.3) sans action du médecin.

  Contexte:
    Étant donné le médecin "899700366240" connecté avec Pro Santé Connect

  @exigence=SC.DMP/CONF.16
  Scénario: L'autorisation d'accès expirée au bout de six mois est renouvelée sans action
    Étant donné l'identité de "BOUCHER" est qualifiée par l'Appli carte Vitale "167100093480710"
    Quand le médecin enregistre le consentement du patient
    Alors l'autorisation d'accès au DMP est posée
    Quand le temps du DMP avance de 6 mois
    Et le médecin ouvre le dossier de "BOUCHER"
    Alors le LGC renouvelle l'autorisation d'accès au DMP, expirée, sans action du médecin

  Plan du scénario: Une cause qui empêche de consulter le DMP, affichée sans clic
    Quand le médecin ouvre le dossier de "<patient>"
    Alors l'identité du patient est récupérée
    Quand le médecin qualifie l'identité en un clic avec la carte nationale d'identité
    Alors l'identité du patient est qualifiée
    Et l'icône DMP est grisée et la liste DICA indique « <cause> »
    Et aucune consultation n'a été envoyée au DMP

    Exemples:
      | patient  | cause                                      |
      | DMPCLOS  | Le DMP du patient est fermé                |
      | OPPOSANT | Le patient vous a bloqué l'accès à son DMP |
