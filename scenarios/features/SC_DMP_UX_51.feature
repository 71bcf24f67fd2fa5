# language: fr
Fonctionnalité: SC.DMP/UX.51, SC.DMP/UX.14.BIS — Document invisible au patient, puis visible
  En un clic, avant l'envoi, le médecin rend un document invisible au patient : l'ITI-41 porte alors le code
  INVISIBLE_PATIENT, et seulement dans ce cas. Après l'annonce, un clic dans la liste du DMP le rend visible (une
  mise à jour ITI-57). Sans action, le DMP informe le patient au bout d'un mois et rend le document visible de
  lui-même au bout de trois (horloge simulée du DMP avancée) ; le LGC le montre.

  Contexte:
    Étant donné le médecin "899700366240" connecté avec Pro Santé Connect
    Et l'identité de "BOUCHER" est qualifiée par l'Appli carte Vitale "167100093480710"
    Quand le médecin enregistre le consentement du patient
    Alors l'autorisation d'accès au DMP est posée

  @exigence=SC.DMP/UX.51 @exigence=SC.DMP/UX.14.BIS
  Scénario: Rendre invisible en un clic avant l'envoi, puis visible après l'annonce
    Quand le médecin rédige une ordonnance de produits de santé envoyée au DMP dans 30 secondes
    Et le médecin valide l'ordonnance
    Alors l'ordonnance est en attente d'envoi différé au DMP
    Quand le médecin rend l'ordonnance invisible au patient en un clic
    Et le médecin envoie l'ordonnance au DMP sans attendre
    Alors l'ordonnance est envoyée au DMP
    Et le DMP a reçu l'ordonnance invisible pour le patient
    Quand le médecin rend l'ordonnance visible au patient depuis la liste du DMP
    Alors une seule mise à jour ITI-57 a rendu l'ordonnance visible au patient

  @exigence=SC.DMP/UX.14.BIS
  Scénario: Le DMP rend visible de lui-même un document invisible au bout de trois mois
    Étant donné un autre poste a déposé au DMP de "167100093480710" un document invisible pour le patient
    Alors après actualisation, le LGC montre le document "Résultats avant annonce" invisible pour le patient
    Quand le temps du DMP avance de 1 mois
    Alors le DMP a informé le patient de l'existence du document invisible le document "Résultats avant annonce"
    Quand le temps du DMP avance de 2 mois
    Alors le DMP a rendu visible au patient, de lui-même, le document "Résultats avant annonce"
    Et après actualisation, le LGC montre le document "Résultats avant annonce" visible pour le patient
