# language: fr
@exigence=SC.DMP/ALI/PROG.03
Fonctionnalité: SC.DMP/ALI/PROG.03 — Suspendre ou annuler l'envoi programmé au DMP
  L'envoi automatique au DMP est différé après la validation ; pendant ce délai, le médecin peut le suspendre
  (rien ne part, même passé l'échéance), le reprendre (il part une fois, sous l'identifiant unique fixé à la
  validation) ou l'annuler (il ne part jamais).

  Contexte:
    Étant donné le médecin "899700366240" connecté avec Pro Santé Connect
    Et l'identité de "BOUCHER" est qualifiée par l'Appli carte Vitale "167100093480710"

  Scénario: Suspendre puis reprendre un envoi, annuler le suivant
    Quand le médecin rédige une ordonnance de produits de santé envoyée au DMP dans 6 secondes
    Et le médecin valide l'ordonnance
    Alors l'ordonnance est en attente d'envoi différé au DMP
    Quand le médecin suspend l'envoi de l'ordonnance au DMP
    Alors l'envoi reste suspendu au-delà du délai, sans rien envoyer au DMP
    Quand le médecin reprend l'envoi de l'ordonnance au DMP
    Alors l'ordonnance est envoyée au DMP
    Et le DMP a reçu l'ordonnance une seule fois, après la reprise
    Quand le médecin rédige une ordonnance de produits de santé envoyée au DMP dans 6 secondes
    Et le médecin valide l'ordonnance
    Alors l'ordonnance est en attente d'envoi différé au DMP
    Quand le médecin annule l'envoi de l'ordonnance au DMP
    Alors l'envoi annulé ne part jamais au DMP
    Et le DMP contient l'ordonnance une seule fois
