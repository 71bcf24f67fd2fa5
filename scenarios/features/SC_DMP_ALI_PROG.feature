# language: fr
@exigence=SC.DMP/ALI/PROG.06 @exigence=SC.DMP/ALI/PROG.07
Fonctionnalité: SC.DMP/ALI/PROG.06, SC.DMP/ALI/PROG.07 — Alimentation différée du DMP quand le DMP est injoignable
  Le document validé est mis en file d'attente, visible comme en attente, puis envoyé une seule fois
  automatiquement quand le DMP redevient joignable.

  Contexte:
    Étant donné le médecin "899700366240" connecté avec Pro Santé Connect
    Et l'identité de "BOUCHER" est qualifiée par l'Appli carte Vitale "167100093480710"

  Scénario: DMP injoignable à la validation, puis de retour
    Étant donné le DMP est injoignable
    Quand le médecin rédige une ordonnance de produits de santé
    Et le médecin valide l'ordonnance
    Alors l'ordonnance est en attente d'envoi au DMP avec le motif affiché
    Quand le DMP redevient joignable
    Alors l'ordonnance est envoyée au DMP
    Et le DMP contient l'ordonnance une seule fois
    Et le DMP a reçu l'ordonnance visible pour le patient
