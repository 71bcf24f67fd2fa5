# language: fr
@exigence=SC.DMP/UX.13 @exigence=SC.DMP/UX.46 @exigence=SC.DMP/UX.14.BIS @exigence=SC.DMP/CONF.16
Fonctionnalité: SC.DMP/UX.13, UX.46, UX.14.BIS — Conditions d'accès au DMP (DICA) et nouveaux documents
  Sans consentement, la consultation est impossible et la liste DICA en donne la cause ; le consentement
  enregistré pose l'autorisation d'accès, puis le nombre de nouveaux documents apparaît sans clic,
  documents invisibles pour le patient signalés.

  Contexte:
    Étant donné le médecin "899700366240" connecté avec Pro Santé Connect
    Et l'identité de "BOUCHER" est qualifiée par l'Appli carte Vitale "167100093480710"
    Et un autre poste a déposé au DMP de "167100093480710" un document invisible pour le patient

  Scénario: Du refus au consentement
    Alors la consultation du DMP est impossible et la liste DICA indique « Consentement »
    Et aucune consultation n'a été envoyée au DMP
    Quand le médecin enregistre le consentement du patient
    Alors l'autorisation d'accès au DMP est posée
    Et le nombre de nouveaux documents apparaît sans clic, dont 1 invisible pour le patient
